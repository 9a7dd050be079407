"""File formats and file helpers shared by the stages: whole-or-nothing writes (`atomic`), the
dataset archive (`archive`), the prepared arrays (`prepared`), the numbers of the files DVC's
tables show (`review`) and what a run's evaluation file says about it (`evaluation`)."""
