"""Attribution methods compared on the same stored captures (I2AM all heads, top-k heads, baselines)."""
