"""The Counter environment from the README, a few steps of it by hand, then a recorded rollout."""

import asyncio

import agentgym as ag


class Counter(ag.Environment):
    """Reach the target by adding numbers."""

    async def reset(self, task: ag.Task) -> str:
        self.value, self.target = 0, task.data["target"]
        return f"Reach {self.target}. The value is 0."

    @ag.tool
    async def add(self, n: int) -> str:
        """Add n to the value."""
        self.value += n
        if self.value == self.target:
            self.finish(reward=1.0)          # ends the episode with success
        return f"The value is {self.value}."

    def state_key(self) -> str:
        return str(self.value)

    def expert_action(self) -> str:  # optional: makes --policy expert (and SFT data) work
        return f"add(n={self.target - self.value})"


ag.register("counter-v0", Counter)


async def main() -> None:
    async with ag.make("counter-v0") as env:
        print(await env.reset(ag.Task(id="t0", env="counter-v0", data={"target": 5})))
        for action in ['add(n=2)', '<tool_call>{"name": "add", "arguments": {"n": "x"}}</tool_call>', "add(n=3)"]:
            result = await env.step(action)
            print(f"> {action}\n{result.observation}  (reward={result.reward}, valid={result.valid}, "
                  f"terminated={result.terminated})")
    # many episodes at once, recorded: the same runner trains models (any policy name works here)
    tasks = [ag.Task(id=f"t{i}", env="counter-v0", data={"target": target}) for i, target in enumerate([3, 5, 8])]
    async with ag.RolloutRunner("expert", n=2) as runner:
        result = await runner.run(tasks)
    print(result.summary())


if __name__ == "__main__":
    asyncio.run(main())
