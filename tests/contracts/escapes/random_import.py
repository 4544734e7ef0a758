# escape: random numbers | source: non-determinism
from random import random
@export
def attack():
    return random()
