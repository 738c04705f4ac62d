"""What the API returns: plain Python records, no numpy or TensorFlow types."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Union


@dataclasses.dataclass(frozen=True)
class Item:
    """One ranked item: its id, title ("" in a catalogue without titles), score (the signature's dot product) and
    attributes ({column: text | [text, ...]}; {} for a version written without them)."""

    item_id: str
    title: str
    score: float
    attributes: Dict[str, Union[str, List[str]]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Embedded:
    """A new item through embed_item: its embedding and the catalogue's items nearest to it."""

    embedding: List[float]
    items: List[Item]
