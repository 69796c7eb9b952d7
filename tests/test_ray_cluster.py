"""How many stage-1 actors a cluster's nodes can hold (checked before any shard is handed out)."""
import pytest

from common.config import load_config
from common.ray_cluster import actors_that_fit
from common.schema import StylizeRay
from pipeline.runner import Stage1Error, check_actors_fit


def _ray(**over) -> StylizeRay:
    """The default config's stage-1 Ray section with ``over`` changed (two actors)."""
    return load_config().stylize.ray.model_copy(update={"num_actors": 2, **over})


def test_an_actor_lives_on_one_node():
    # 3 CPUs split over two nodes (1 + 2) hold one 1.5-CPU actor, not two.
    assert actors_that_fit([{"CPU": 1.0}, {"CPU": 2.0}], {"CPU": 1.5}) == 1
    assert actors_that_fit([{"CPU": 4.0}], {"CPU": 1.0}) == 4
    assert actors_that_fit([{"CPU": 1.0}], {"CPU": 0.1}) == 10       # fixed-point fractions
    assert actors_that_fit([{"CPU": 8.0, "GPU": 2.0}, {"CPU": 8.0}], {"CPU": 1.0, "GPU": 1.0}) == 2
    assert actors_that_fit([{"CPU": 8.0}], {"CPU": 1.0, "GPU": 0.0}) == 8   # zero: not needed
    assert actors_that_fit([{"CPU": 2.0, "stage1": 1.0}, {"CPU": 8.0}], {"CPU": 1.0, "stage1": 1.0}) == 1
    assert actors_that_fit([], {"CPU": 1.0}) == 0


def test_actors_that_fit_pass():
    check_actors_fit(_ray(num_actors=2), [{"CPU": 1.0}, {"CPU": 1.0}])


@pytest.mark.parametrize("over, nodes, says", [
    ({"actor_resources": {"stage1": 1.0}}, [{"CPU": 2.0, "stage1": 1.0}],
     "actors of 1 CPU, 1 stage1 each, but the Ray cluster's nodes hold 1"),
    ({"num_gpus_per_actor": 1.0}, [{"CPU": 4.0}],
     "The cluster has no GPUs: set stylize.ray.num_gpus_per_actor=0"),
    ({"num_cpus_per_actor": 2.0}, [{"CPU": 3.0}], "actors of 2 CPU each"),
])
def test_actors_that_cannot_all_be_placed_are_refused(over, nodes, says):
    with pytest.raises(Stage1Error, match="would wait forever") as error:
        check_actors_fit(_ray(**over), nodes)
    assert says in str(error.value) and "stylize.ray.num_actors=2" in str(error.value)
