"""Ray adapters: starting Ray, rollout workers and their pool, the learner group. The only
package that imports Ray."""
