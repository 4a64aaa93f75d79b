"""A clock a test moves by hand: call it for the time, ``sleep`` to let time pass."""


class Clock:
    def __init__(self, now=1_750_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
