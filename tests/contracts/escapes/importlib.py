# escape: importlib.import_module | source: import system tricks
from importlib import import_module
@export
def attack():
    return import_module('os')
