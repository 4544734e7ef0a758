# escape: help() pager escape | source: pyjail 'help()' escapes
@export
def attack():
    help()
    return 1
