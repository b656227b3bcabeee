"""medclass: from a folder of medical images to a trustworthy, explained, deployable classifier."""
__version__ = "0.1.0"
