"""The DQN agent's parts on hand-made data with known answers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from models import dqn


def transition(i: int) -> dqn.Transition:
    return dqn.Transition(np.full(3, i, np.float32), i % 2, float(i), np.full(3, i + 1, np.float32), i % 5 == 4)


def test_replay_memory_drops_the_oldest_when_full() -> None:
    memory = dqn.ReplayMemory(capacity=4, seed=0)
    for i in range(6):
        memory.push(transition(i))
    assert len(memory) == 4
    assert [t.reward for t in memory.memory] == [2.0, 3.0, 4.0, 5.0]


def test_replay_sample_transposes_columns_without_replacement() -> None:
    memory = dqn.ReplayMemory(capacity=10, seed=0)
    for i in range(10):
        memory.push(transition(i))
    batch = memory.sample(10, torch.device("cpu"))
    assert batch.obs.shape == (10, 3) and batch.next_obs.shape == (10, 3)
    assert batch.action.dtype == torch.int64 and batch.terminated.dtype == torch.float32
    assert sorted(batch.reward.tolist()) == [float(i) for i in range(10)]  # each exactly once
    # columns stay aligned: every row's next_obs is its obs + 1 and its reward its index
    torch.testing.assert_close(batch.next_obs, batch.obs + 1)
    torch.testing.assert_close(batch.obs[:, 0], batch.reward)
    assert batch.terminated.tolist() == [float(r % 5 == 4) for r in batch.reward.tolist()]


def test_replay_sampling_is_seeded() -> None:
    draws = []
    for _ in range(2):
        memory = dqn.ReplayMemory(capacity=100, seed=7)
        for i in range(100):
            memory.push(transition(i))
        draws.append(memory.sample(8, torch.device("cpu")).reward.tolist())
    assert draws[0] == draws[1]


def test_epsilon_decays_linearly_then_stays() -> None:
    assert dqn.linear_epsilon(0, 1.0, 0.1, 100) == 1.0
    assert dqn.linear_epsilon(50, 1.0, 0.1, 100) == pytest.approx(0.55)
    assert dqn.linear_epsilon(100, 1.0, 0.1, 100) == pytest.approx(0.1)
    assert dqn.linear_epsilon(10_000, 1.0, 0.1, 100) == pytest.approx(0.1)


def test_epsilon_greedy_explores_at_the_expected_rate() -> None:
    q_network = dqn.QNetwork(2, 4, hidden=8)
    obs = np.zeros((20_000, 2), np.float32)
    greedy = q_network(torch.zeros(1, 2)).argmax().item()
    rng = np.random.default_rng(0)
    assert (dqn.select_actions(q_network, obs, 0.0, 4, rng) == greedy).all()
    actions = dqn.select_actions(q_network, obs, 0.4, 4, rng)
    # greedy with 1 - eps, plus a random action that happens to be the greedy one: 0.6 + 0.4 / 4
    assert np.mean(actions == greedy) == pytest.approx(0.7, abs=0.015)


def test_td_target_masks_terminal_states() -> None:
    reward = torch.tensor([1.0, 1.0, 0.5])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    next_q_target = torch.tensor([[2.0, 3.0], [10.0, 20.0], [-1.0, -4.0]])
    target = dqn.td_target(reward, terminated, next_q_target, gamma=0.9)
    # 1 + 0.9 * 3; 1 (terminal: no bootstrap); 0.5 + 0.9 * -1
    torch.testing.assert_close(target, torch.tensor([3.7, 1.0, -0.4]))


def test_double_dqn_target_evaluates_the_online_argmax_with_the_target_net() -> None:
    reward = torch.tensor([0.0, 1.0])
    terminated = torch.tensor([0.0, 0.0])
    next_q_target = torch.tensor([[2.0, 3.0], [5.0, 1.0]])
    next_q_online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])  # online prefers action 0, then 1
    target = dqn.td_target(reward, terminated, next_q_target, 0.5, next_q_online)
    torch.testing.assert_close(target, torch.tensor([1.0, 1.5]))  # 0.5 * 2; 1 + 0.5 * 1


@pytest.mark.parametrize("double_dqn", [False, True])
def test_td_update_fits_a_fixed_batch(double_dqn: bool) -> None:
    torch.manual_seed(0)
    q_network = dqn.QNetwork(4, 2, hidden=16)
    target_network = dqn.QNetwork(4, 2, hidden=16)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-2)
    batch = dqn.Batch(
        torch.randn(32, 4), torch.randint(0, 2, (32,)), torch.rand(32), torch.randn(32, 4), torch.ones(32)
    )
    before = [p.clone() for p in q_network.parameters()]
    losses = [
        dqn.td_update(q_network, target_network, optimizer, batch, 0.99, double_dqn, 10.0)["train/loss"].item()
        for _ in range(200)
    ]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.05 * losses[0]  # all terminal: Q(s, a) must match the rewards
    assert all(not torch.equal(a, b) for a, b in zip(before, q_network.parameters(), strict=True))


def test_target_update_copies_or_mixes() -> None:
    online, target = dqn.QNetwork(2, 2, 4), dqn.QNetwork(2, 2, 4)
    old = [p.clone() for p in target.parameters()]
    dqn.soft_update_target(target, online, tau=0.5)
    for t, o, p in zip(target.parameters(), old, online.parameters(), strict=True):
        torch.testing.assert_close(t, (o + p) / 2)
    dqn.soft_update_target(target, online, tau=1.0)
    for t, p in zip(target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t, p, rtol=0, atol=0)


def test_network_shapes() -> None:
    assert dqn.build_q_network((4,), 2, 32)(torch.randn(5, 4)).shape == (5, 2)
    conv = dqn.build_q_network((2, 40, 60), 3, 32)
    assert conv(torch.randint(0, 256, (5, 2, 40, 60), dtype=torch.uint8)).shape == (5, 3)
    policy = dqn.GreedyPolicy(conv)
    assert policy(torch.zeros(5, 2, 40, 60, dtype=torch.uint8)).shape == (5,)


def _cartpole(max_steps: int, n: int = 1) -> SyncVectorEnv:
    return SyncVectorEnv(
        [lambda: gym.make("CartPole-v1", max_episode_steps=max_steps)] * n, autoreset_mode=AutoresetMode.SAME_STEP
    )


def test_collect_at_a_time_limit_stores_the_true_last_observation_and_bootstraps() -> None:
    envs = _cartpole(max_steps=3)
    memory = dqn.ReplayMemory(100, seed=0)
    obs, _ = envs.reset(seed=[0])
    starts = [obs[0].copy()]
    for _ in range(6):  # alternate pushes so the pole survives: two truncated episodes of 3 steps
        obs, _, done = dqn.collect(envs, obs, np.array([len(memory) % 2]), memory)
        if done[0]:
            starts.append(obs[0].copy())
    t = list(memory.memory)
    assert [x.terminated for x in t] == [False] * 6  # truncation is not termination
    assert np.array_equal(t[0].obs, starts[0]) and np.array_equal(t[3].obs, starts[1])
    for i in (0, 1, 3, 4):  # within an episode the chain is continuous
        assert np.array_equal(t[i].next_obs, t[i + 1].obs)
    # at the boundary the stored next_obs is the episode's last state, not the next episode's first
    assert not np.array_equal(t[2].next_obs, t[3].obs)
    for x in t:  # and it is the physical successor: CartPole's Euler step moves x by 0.02 * x_dot
        assert x.next_obs[0] == pytest.approx(x.obs[0] + 0.02 * x.obs[1], abs=1e-6)
    envs.close()


def test_collect_at_termination_masks_the_bootstrap() -> None:
    envs = _cartpole(max_steps=500)
    memory = dqn.ReplayMemory(1000, seed=0)
    obs, _ = envs.reset(seed=[1])
    done = np.array([False])
    while not done[0]:  # always push left: the pole falls within a few dozen steps
        obs, _, done = dqn.collect(envs, obs, np.array([0]), memory)
    t = list(memory.memory)
    assert [x.terminated for x in t] == [False] * (len(t) - 1) + [True]
    assert len(t) < 100
    envs.close()


def test_greedy_returns_counts_each_seed_once() -> None:
    envs = _cartpole(max_steps=7, n=4)
    returns = dqn.greedy_returns(lambda obs: np.ones(len(obs), dtype=np.int64) * 0, envs, list(range(10)))
    assert returns.shape == (10,)
    assert (returns <= 7).all() and (returns >= 1).all()
    again = dqn.greedy_returns(lambda obs: np.zeros(len(obs), dtype=np.int64), envs, list(range(10)))
    np.testing.assert_array_equal(returns, again)  # seeded resets: the same episodes
    envs.close()


def test_n_step_returns_sum_discounted_rewards_and_flush_at_episode_end() -> None:
    gamma, n = 0.5, 3
    steps = dqn.NStepReturns(n, gamma, num_envs=1)
    ready: list[dqn.Transition] = []
    for i in range(5):  # rewards 0, 1, 2, 3, 4; the episode terminates at the fifth step
        one = dqn.Transition(np.full(2, i, np.float32), i % 2, float(i), np.full(2, i + 1, np.float32), i == 4)
        ready += steps.push(0, one, done=i == 4)
    assert [t.obs[0] for t in ready] == [0, 1, 2, 3, 4]  # each start once, in order
    assert [t.steps for t in ready] == [3, 3, 3, 2, 1]  # the chains cut by the episode's end are shorter
    assert [t.reward for t in ready] == pytest.approx([0 + 0.5 + 0.5, 1 + 1 + 0.75, 2 + 1.5 + 1, 3 + 2, 4])
    assert [t.next_obs[0] for t in ready] == [3, 4, 5, 5, 5]  # bootstrapped from n steps on, or the last state
    assert [t.terminated for t in ready] == [False, False, True, True, True]
    assert not steps.pending[0]  # nothing waits across episodes


def test_n_step_target_discounts_the_bootstrap_by_gamma_to_the_n() -> None:
    reward, terminated = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    next_q_target = torch.tensor([[2.0, 4.0], [2.0, 4.0]])
    target = dqn.td_target(reward, terminated, next_q_target, 0.5, steps=torch.tensor([3.0, 3.0]))
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.125 * 4.0, 1.0]))


def test_collect_with_a_failure_reward_changes_only_the_stored_terminal_reward() -> None:
    envs = _cartpole(max_steps=500)
    memory = dqn.ReplayMemory(1000, seed=0)
    obs, _ = envs.reset(seed=[1])
    done, returned = np.array([False]), []
    while not done[0]:
        obs, rewards, done = dqn.collect(envs, obs, np.array([0]), memory, failure_reward=-10.0)
        returned.append(float(rewards[0]))
    assert set(returned) == {1.0}  # what the environment paid, for the episode's return
    assert [t.reward for t in memory.memory] == [1.0] * (len(memory) - 1) + [-9.0]
    envs.close()


def test_dueling_head_is_value_plus_centred_advantage() -> None:
    torch.manual_seed(0)
    q_network = dqn.build_q_network((4,), 3, 16, dueling=True)
    obs = torch.randn(5, 4)
    head = q_network.net[-1]
    features = q_network.net[:-1](obs)
    value, advantage = head.value(features), head.advantage(features)
    torch.testing.assert_close(q_network(obs), value + advantage - advantage.mean(dim=1, keepdim=True))
    conv = dqn.build_q_network((2, 40, 60), 3, 16, dueling=True)
    assert conv(torch.zeros(2, 2, 40, 60, dtype=torch.uint8)).shape == (2, 3)
