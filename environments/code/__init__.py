"""Code: write Python from a specification; hidden tests in a sandbox decide the reward."""
