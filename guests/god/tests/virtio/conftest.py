import sys
from pathlib import Path

# pydriver and guest helpers live next to the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
