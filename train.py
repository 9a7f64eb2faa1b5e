"""Trains DiffWave on a folder of music (or the built-in tones). Not implemented yet.

The data pipeline it will use is ready: `python -m data.inspect --data_dir=DIR` shows what it
makes of a folder.
"""

import sys

if __name__ == "__main__":
    sys.exit("error: train.py is not implemented yet (the network, diffusion and training "
             "issue); try `python -m data.inspect` to run the data pipeline")
