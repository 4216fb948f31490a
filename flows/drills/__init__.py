"""Drills: throwaway anvils with the fixture protocol, and forks of live chains."""
