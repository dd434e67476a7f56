"""The chapters of the demo's story; each step is ``async def step(ctx: Context) -> Shown``."""
