"""Low-level XDF reading: the chunk index and the samples, in one namespace.

The reader is split by idea: :mod:`.format` (the container format),
:mod:`.chunks` and :mod:`.index` (finding and indexing chunks, also in
damaged files), :mod:`.decode` and :mod:`.fast` (decoding samples),
:mod:`.salvage` (damaged chunks) and :mod:`.samples` (reading streams).
This module gathers their names, so that ``from stimtrain.xdf.file import
index_xdf, read_samples`` keeps working.
"""

from __future__ import annotations

from .decode import deduce_timestamps
from .format import FORMATS, XdfError, xml_to_dict
from .index import index_xdf
from .salvage import _salvage_numeric  # noqa: F401 - tests reach it here
from .samples import StreamSamples, read_samples
from .table import Damage, StreamIndex, XdfIndex

__all__ = [
    "FORMATS",
    "Damage",
    "XdfError",
    "XdfIndex",
    "StreamIndex",
    "StreamSamples",
    "deduce_timestamps",
    "index_xdf",
    "read_samples",
    "xml_to_dict",
]
