"""The live view: a local web page of the running session (``--view``).

:mod:`.live` is the runner's side (start the view's process, feed it the
console state, take the page's actions); :mod:`.server` is the view's process
(streams in, page out); :mod:`.model` is what the page shows.
"""
