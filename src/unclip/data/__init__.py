"""Datasets: the emoji image–text set built from npm packages, and users' own image folders or shards."""
