# escape: from subprocess import … | source: plain import
from subprocess import run
@export
def attack():
    return run
