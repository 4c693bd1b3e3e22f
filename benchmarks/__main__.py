"""`python -m benchmarks`: every benchmark in turn (so far: DQN on CartPole-v1)."""

from benchmarks.dqn_cartpole import main

if __name__ == "__main__":
    main()
