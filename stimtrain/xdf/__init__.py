"""Reading XDF recordings, in the shared layer: the run's final recording check
(orchestrator) and the analysis read every file through this one reader.

:mod:`.index` indexes the chunks (:mod:`.table` holds the index, :mod:`.chunks`
finds chunk headers, also in damaged files), :mod:`.samples` reads streams:
intact files by :mod:`.fast` at the speed of reading their bytes, damaged
ones chunk by chunk (:mod:`.decode`, :mod:`.salvage`). :mod:`.clock` maps
stream clocks and dejitters timestamps, :mod:`.load` loads streams in
pyxdf's form. :mod:`.file` keeps the names of the former single module.
"""
