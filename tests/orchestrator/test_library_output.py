"""What libraries write to file descriptors 1 and 2 goes to the session's log."""

import logging
import os
import subprocess
import sys

from stimtrain.orchestrator.session.library_output import library_output_to


def test_descriptor_output_goes_to_the_log_python_output_does_not(tmp_path, capfd):
    log = tmp_path / "libraries.log"
    logger = logging.getLogger("stimtrain.test.library_output")
    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger().addHandler(handler)
    try:
        with library_output_to(log):
            os.write(1, b"Closing the file.\n")  # as a C++ library writes
            os.write(2, b"ERR| Stream transmission broke off\n")
            # A child process inherits the descriptors.
            subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
            print("block 1/2: rest")
            logger.warning("a warning for the operator")
    finally:
        logging.getLogger().removeHandler(handler)
    out, err = capfd.readouterr()
    assert log.read_text().splitlines() == [
        "Closing the file.",
        "ERR| Stream transmission broke off",
        "from a child",
    ]
    assert out == "block 1/2: rest\n"
    assert "a warning for the operator" in err
    # Everything is back as it was.
    assert handler.stream is sys.stderr
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"
    assert log.stat().st_mode & 0o777 == 0o644
