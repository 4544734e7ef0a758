# escape: gc.get_objects() to find node objects | source: gc-based object discovery
import gc
@export
def attack():
    return gc.get_objects()
