"""devices/magstim."""
