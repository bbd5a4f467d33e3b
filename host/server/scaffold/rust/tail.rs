
export!(Plugin);
