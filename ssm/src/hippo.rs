//! HiPPO.
