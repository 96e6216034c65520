"""Write the corpus's Builder experiments with PsychoPy's own Builder model.

Run from this folder (``python make_experiments.py``) after a PsychoPy
upgrade changes the file format; the files are committed so the corpus reads
the same bytes every time. ``broken.psyexp`` is written by hand.
"""

from pathlib import Path

from psychopy import experiment
from psychopy.experiment.components.keyboard import KeyboardComponent
from psychopy.experiment.components.microphone import MicrophoneComponent
from psychopy.experiment.components.text import TextComponent
from psychopy.experiment.loops import LoopInitiator, LoopTerminator, TrialHandler

HERE = Path(__file__).parent


def make(
    name: str, n_reps: str = "2", microphone: bool = False, stop: str = ""
) -> None:
    exp = experiment.Experiment()
    exp.settings.params["expName"].val = name
    exp.settings.params["Experiment info"].val = "{'participant': '', 'hand': 'right'}"
    trial = exp.addRoutine("trial")
    word = TextComponent(
        exp, "trial", name="word", text="$label", startVal=0.5, stopVal=stop
    )
    word.params["text"].updates = "set every repeat"
    trial.addComponent(word)
    trial.addComponent(
        KeyboardComponent(
            exp,
            "trial",
            name="resp",
            allowedKeys="'left', 'right'",
            startVal=0.5,
            stopVal=stop,
            storeCorrect=True,
            correctAns="$answer",
        )
    )
    if microphone:
        trial.addComponent(MicrophoneComponent(exp, "trial", name="voice"))
    loop = TrialHandler(
        exp, name="trials", nReps=n_reps, conditionsFile="conditions.csv"
    )
    exp.flow.append(LoopInitiator(loop))
    exp.flow.append(trial)
    exp.flow.append(LoopTerminator(loop))
    exp.saveToXML(str(HERE / f"{name}.psyexp"))


if __name__ == "__main__":
    (HERE / "conditions.csv").write_text("label,answer\nLEFT,left\nRIGHT,right\n")
    make("keys")
    make("unbounded", n_reps="$n_reps")
    make("voice", microphone=True)
    # Word and keyboard for 0.3 s: the routine ends without a key, so the
    # real keyboard's path runs headless (nothing can press it under Xvfb).
    make("timed", stop="0.3")
