"""The app's logic, free of any UI library so that tests can drive it: the clicked points (points), what the
canvas shows (overlay), running edits in the background with progress (jobs), saving every result
(autosave) and the DragonDiffusion modes (dragon_modes). app.py wires these to Gradio."""
