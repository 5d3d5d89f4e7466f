"""ptft: reproducible pre-training and fine-tuning of text classifiers on DVC."""
