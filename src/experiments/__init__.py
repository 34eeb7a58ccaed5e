"""lecture-claims: puts the classic tips for training deep networks to the test on real MNIST."""
