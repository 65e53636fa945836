"""Small pieces shared by the library, the training scripts and the evaluation scripts."""
