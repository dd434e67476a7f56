"""Device posture: the laptop attests with compliant facts and gets a token; the same laptop
with its SIM PIN lock off is refused, with the rule it failed and what to do about it."""

from __future__ import annotations

from clinic_client.posture import PostureCheckFailed
from device_policy.simulated import SimulatedProfile
from server.demo import cast
from server.demo.context import Context
from server.demo.steps import Shown, Unexpected


async def laptop_compliant(ctx: Context) -> Shown:
    """The laptop attests with compliant (simulated) facts and gets a posture token."""
    ctx.scene.laptop_agent = agent = ctx.agent(cast.LAPTOP)
    result = await agent.attest()
    if not result.report.compliant:
        raise Unexpected("the compliant laptop was not found compliant")
    passed = sum(1 for r in result.report.results if r.outcome.value == "pass")
    minutes = max(0, round(result.expires_in().total_seconds() / 60))
    return Shown(
        f"compliant: {passed}/{len(result.report.results)} rules pass (policy {result.policy_version}); "
        f"posture token for {minutes} min, bound to the laptop's key",
        {
            "compliant": True,
            "rules_passed": passed,
            "rules": len(result.report.results),
            "policy_version": result.policy_version,
        },
    )


async def sim_pin_off_refused(ctx: Context) -> Shown:
    """The laptop with its SIM PIN lock off attests: it must be refused, with the remedy."""
    async with ctx.agent(cast.LAPTOP, SimulatedProfile.SIM_PIN_OFF) as agent:
        try:
            await agent.attest()
        except PostureCheckFailed as failed:
            rules = [rule.id for rule in failed.failed_rules]
            remediation = next(
                (r.remediation for r in failed.failed_rules if r.id == "sim-pin-lock" and r.remediation),
                None,
            )
            if remediation is None:
                raise Unexpected(
                    f"refused, but not for the SIM PIN lock (failed: {', '.join(rules)})",
                    failed_rules=rules,
                ) from None
            return Shown(
                f"refused ({failed.code}): {remediation}",
                {"refused": True, "code": failed.code, "failed_rules": rules, "remediation": remediation},
            )
    raise Unexpected("a laptop with its SIM PIN lock off got a posture token", refused=False)
