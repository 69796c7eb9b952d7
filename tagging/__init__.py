"""Zero-shot style tagging: a head maps frozen style codes into a frozen text encoder's space.

A pure library: it takes numpy arrays of codes and lists of tags, never shards or checkpoints.
"""
from tagging.head import HeadConfig, TagHead, train_head
from tagging.metrics import load_scores, metrics_from_file, save_scores, tag_metrics
from tagging.tags import (TaggingError, build_vocabulary, truth_matrix, unseen_mask,
                          validate_tag_rows)
from tagging.text import TextEncoder, default_model_path

__all__ = ["HeadConfig", "TagHead", "TaggingError", "TextEncoder", "build_vocabulary",
           "default_model_path", "load_scores", "metrics_from_file", "save_scores",
           "tag_metrics", "train_head", "truth_matrix", "unseen_mask", "validate_tag_rows"]
