"""A run paused under one version of the code, resumed under another: refused, kept."""

import asyncio

from tiny_tasks import Command, MemorySaver, ReplayMismatchError, get_run, interrupt, task

saver = MemorySaver()
opts = {"run_id": "r", "checkpointer": saver}
charges: list[int] = []  # the outside world


def charge(amount: int) -> str:
    charges.append(amount)
    return f"receipt for {amount}"


@task("job")
async def job(_, ctx):
    await ctx.step(charge, 1)  # recorded as job/charge#0 with a hash of its arguments
    return interrupt("ship?")


@task("job")  # the same task after an edit: the step now gets other arguments
async def edited_job(_, ctx):
    await ctx.step(charge, 42)
    return interrupt("ship?")


async def main() -> None:
    async for _, _, intr in job(None, **opts):
        if intr:
            print("paused:", intr.value)
    try:
        await edited_job.invoke(Command(resume="yes"), **opts)
    except ReplayMismatchError as error:
        print("refused at", error.site_id, "- recorded", error.recorded, "- found", error.found)
    state = await get_run(saver, "r")
    assert state is not None
    print("the run is still", state.status, "on", [i.id for i in state.pending])
    print("the old code finishes it:", await job.invoke(Command(resume="yes"), **opts))
    print("charges made:", charges)


asyncio.run(main())
