"""nomac: compressed neural networks to multiplier-free hardware."""
