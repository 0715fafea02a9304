"""Episode records: one schema for every episode, read alike by evaluation, SFT and RL.

`Episode` (messages, tools, metadata, turns) is defined in `schema`; `store` writes them to append-only JSONL,
reads them back with filters (reporting, never hiding, bad lines), and converts to Parquet and to a
Hugging Face `datasets.Dataset`. pyarrow and datasets are imported only by the functions that need them.
"""

from orchard_envs.episodes.schema import (
    SCHEMA_VERSION,
    STATUSES,
    Episode,
    EpisodeMetadata,
    TurnTokens,
    current_versions,
)
from orchard_envs.episodes.store import (
    EpisodeWriter,
    InvalidEpisodeWarning,
    ReadReport,
    count_invalid,
    episode_features,
    load_dataset,
    parquet_schema,
    read_episodes,
    to_parquet,
)

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "Episode",
    "EpisodeMetadata",
    "EpisodeWriter",
    "InvalidEpisodeWarning",
    "ReadReport",
    "TurnTokens",
    "count_invalid",
    "current_versions",
    "episode_features",
    "load_dataset",
    "parquet_schema",
    "read_episodes",
    "to_parquet",
]
