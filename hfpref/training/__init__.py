"""Training with TRL + PEFT: imported only when training is asked for."""
