"""Which Builder components stimtrain runs, and what the others would need.

stimtrain provides the session's window, its keyboard and mouse, and nothing
else a Builder experiment may ask for: the stimulator's serial port and the
trigger lines are the session's, and no microphone, camera, eye tracker,
sound output or button box is set up. A component not in
:data:`SUPPORTED_COMPONENTS` is refused before the session starts, by name
and line (:func:`~stimtrain.tasks.builder.experiment.read_experiment`).
"""

from __future__ import annotations

#: Components stimtrain runs: drawn on the session's window, read from its
#: keyboard and mouse, or plain code. Everything else is refused by name.
SUPPORTED_COMPONENTS = frozenset(
    {
        "RoutineSettingsComponent",
        "TextComponent",
        "TextboxComponent",
        "ImageComponent",
        "PolygonComponent",
        "GratingComponent",
        "EnvGratingComponent",
        "NoiseStimComponent",
        "DotsComponent",
        "ApertureComponent",
        "ProgressComponent",
        "KeyboardComponent",
        "MouseComponent",
        "SliderComponent",
        "FormComponent",
        "ButtonComponent",
        "BrushComponent",
        "CodeComponent",
        "StaticComponent",
        "VariableComponent",
    }
)
#: Responses the simulated participant cannot give (it presses keys only).
MANUAL_COMPONENTS = frozenset(
    {
        "MouseComponent",
        "SliderComponent",
        "FormComponent",
        "ButtonComponent",
        "BrushComponent",
    }
)
#: What the refused components need, for the message.
DEVICE_NEEDS = {
    "MicrophoneComponent": "a microphone",
    "SoundComponent": "a sound output",
    "CameraComponent": "a camera",
    "EyetrackerRecordComponent": "an eye tracker",
    "RegionOfInterestComponent": "an eye tracker",
    "EyetrackerCalibrationRoutine": "an eye tracker",
    "EyetrackerValidationRoutine": "an eye tracker",
    "SerialOutComponent": "a serial port",
    "ParallelOutComponent": "a parallel port",
    "JoystickComponent": "a joystick",
    "JoyButtonsComponent": "a joystick",
    "ButtonBoxComponent": "a button box",
    "cedrusButtonBoxComponent": "a Cedrus button box",
    "ioLabsButtonBoxComponent": "an ioLabs button box",
    "EmotivRecordingComponent": "an Emotiv headset",
    "EmotivMarkingComponent": "an Emotiv headset",
    "QmixPumpComponent": "a syringe pump",
    "MovieComponent": "a movie decoder",
    "PanoramaComponent": "a panorama viewer",
}
