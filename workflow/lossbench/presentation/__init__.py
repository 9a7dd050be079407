"""How results are shown, shared by the figures and report stages: the look of every figure
(`figure_style`) and the tuning results' section and figure (`tuning_report`)."""
