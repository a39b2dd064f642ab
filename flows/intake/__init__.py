"""Alert intake: alerts from AWS (EventBridge, SNS), GitHub and any signed webhook start playbook runs by themselves.

`sources` checks each endpoint's signature and unwraps its envelope; `routing` matches an alert's facts to the
playbooks' `triggers:` and makes their inputs; `enrich` fills what an alert leaves out (a key's user, a GitHub
alert's key id); `launcher` starts the run (the service's warm runner, or a deployment run for any worker) and
keeps one open run per key. The endpoints themselves live in `flows.intake.endpoints`, mounted by `stanch serve`.
"""
