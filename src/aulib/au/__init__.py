"""Action Unit models: occurrence (linear SVM per AU), intensity (linear SVR per AU), emotion rules."""
