"""Learning: role-conditioned advantages (RAE), the loss and log-probs (pure), and the
DeepSpeed learner that applies them."""
