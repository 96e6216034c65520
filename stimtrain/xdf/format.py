"""The XDF container format: chunk tags, value formats, header XML.

An XDF file is the magic ``XDF:`` followed by chunks ``[NumLengthBytes]
[Length] [Tag] [Content]``. Tags: 1 FileHeader, 2 StreamHeader, 3 Samples,
4 ClockOffset, 5 Boundary, 6 StreamFooter. A sample is ``[TimeStampBytes]
[TimeStamp] [values]`` where TimeStampBytes is 0 (the time is the previous
one plus 1/nominal_srate) or 8 (a double follows). Numeric values are
little-endian; a string value is a variable-length length and the bytes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from xml.etree.ElementTree import ParseError, fromstring

import numpy as np

logger = logging.getLogger("stimtrain.xdf.file")

TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6

FORMATS = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
}
# Boundary chunks carry this UUID; used to resynchronise after corruption.
BOUNDARY_UUID = bytes.fromhex("43a546dccbf5410fb30ed5467383cbe4")


def xml_to_dict(element) -> dict:
    """Turn an attribute-less XML element into pyxdf's nested dict form.

    Every child tag maps to a list of its values (dicts or text), so that
    ``info["name"][0]`` is the stream's name, as in :func:`pyxdf.load_xdf`.
    """
    children: defaultdict = defaultdict(list)
    for child in element:
        for key, value in xml_to_dict(child).items():
            children[key].append(value)
    return {element.tag: children or element.text}


def _parse_xml(raw: bytes, what: str) -> dict | None:
    try:
        return xml_to_dict(fromstring(raw.decode("utf-8", "replace")))
    except ParseError as err:
        logger.warning("Ignoring the corrupt XML of a %s (%s)", what, err)
        return None


class XdfError(ValueError):
    """A file that cannot be read as XDF at all (no magic, no stream header)."""


def _varlen_from(buf, pos: int) -> tuple[int, int]:
    """Decode a variable-length integer at ``buf[pos]``; return value, next pos."""
    size = buf[pos]
    if size not in (1, 4, 8):
        raise ValueError(f"invalid variable-length integer size byte {size}")
    end = pos + 1 + size
    if end > len(buf):
        raise EOFError
    return int.from_bytes(buf[pos + 1 : end], "little"), end
