"""fitting: experimental STDP data sets, losses and the optax fit loop for ca_plast rules."""
