"""The shard format: the one contract between stage 1 and its readers (see shards.schema)."""
