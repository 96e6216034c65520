"""Reading XDF recordings, in the shared layer: the run's final recording check
(orchestrator) and the analysis read every file through this one reader.

:mod:`.file` indexes and reads chunks (salvaging damaged ones), :mod:`.clock`
maps stream clocks and dejitters timestamps, :mod:`.load` loads streams.
"""
