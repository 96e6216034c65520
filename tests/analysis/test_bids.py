"""BIDS export with mne-bids, checked by the official BIDS validator."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from stimtrain.analysis.bids import validate_bids, write_bids, write_bids_run

# Its module fixtures are costly: every test of it runs on one worker.
pytestmark = pytest.mark.xdist_group("test_bids")


def _session(data, rec, sub, ses):
    folder = data / f"sub-{sub}" / f"ses-{ses}"
    folder.mkdir(parents=True)
    shutil.copy(rec.path, folder / f"sub-{sub}_ses-{ses}_run-01_recording.xdf")
    (folder / f"sub-{sub}_ses-{ses}_run-01_plan.json").write_text("{}")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, rec5k, make_raw):
    tmp = tmp_path_factory.mktemp("bids")
    data, root = tmp / "data", tmp / "bids"
    folders = [_session(data, rec5k, "01", "1"), _session(data, rec5k, "02", "1")]
    write_bids(folders, root)
    # A run with EMG (MEPs) next to the EEG, from memory.
    raw, _ = make_raw(n_pulses=6, spacing=0.5, sfreq=1000.0)
    write_bids_run(raw, root, participant="03", session="1", run=1)
    return root


def test_dataset_passes_the_validator(dataset):
    errors, warnings = validate_bids(dataset)
    assert errors == [], json.dumps(errors, indent=1)[:3000]


def test_events_carry_marker_fields(dataset, rec5k):
    events = pd.read_csv(
        dataset / "sub-01/ses-1/eeg/sub-01_ses-1_task-stimtrain_run-01_events.tsv",
        sep="\t",
    )
    pulses = events[events["trial_type"] == "pulse"]
    assert len(pulses) == 20
    for col in ("block", "pulse", "pattern", "intensity", "unit", "power", "scheduled"):
        assert col in events.columns, col
    assert list(pulses["unit"].unique()) == ["%RMT"]
    stim = events[events["trial_type"] == "stim_onset"]
    assert set(stim["condition"]) == {"congruent", "incongruent"}
    sidecar = json.loads(
        (
            dataset / "sub-01/ses-1/eeg/sub-01_ses-1_task-stimtrain_run-01_tms.json"
        ).read_text()
    )
    assert sidecar["PulseCount"] == 20
    assert sidecar["Blocks"][0]["IntensityUnit"] == "%RMT"
    assert "*_tms.json" in (dataset / ".bidsignore").read_text()


def test_participants_channels_and_sourcedata(dataset):
    participants = pd.read_csv(dataset / "participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-02", "sub-03"]
    channels = pd.read_csv(
        dataset / "sub-03/ses-1/eeg/sub-03_ses-1_task-stimtrain_run-01_channels.tsv",
        sep="\t",
    )
    assert channels.set_index("name").loc["FDI", "type"] == "EMG"
    assert (
        dataset / "sourcedata/sub-01/ses-1/sub-01_ses-1_run-01_recording.xdf"
    ).is_file()


def test_bad_session_folder(tmp_path):
    with pytest.raises(ValueError, match="must be <root>/sub-<id>/ses-<n>"):
        write_bids([tmp_path], tmp_path / "bids")
    with pytest.raises(ValueError, match="at least one session folder"):
        write_bids([], tmp_path / "bids")


def test_validator_catches_a_broken_dataset(dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "dataset_description.json").unlink()
    for f in broken.glob("sub-01/ses-1/eeg/*_channels.tsv"):
        f.unlink()
    errors, _ = validate_bids(broken)
    assert errors, "the validator found nothing wrong in a broken dataset"
