"""Generates music from a trained checkpoint. Not implemented yet."""

import sys

if __name__ == "__main__":
    sys.exit("error: generate.py is not implemented yet (it needs a trained model from train.py)")
