# escape: closure cells via __closure__ | source: sandbox escape notes on cell_contents
@export
def attack():
    return attack.__closure__
