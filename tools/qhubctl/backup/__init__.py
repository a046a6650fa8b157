"""Backups and restores of a platform (`qhubctl backup`, `qhubctl restore`): destination.py parses where archives
go, run.py runs one Job per part, transfer.py copies a local directory's repository, agent.py is the program the
Jobs run in the qhub/backup image."""
