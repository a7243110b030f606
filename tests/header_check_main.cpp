// The header self-containment check is a compile-time test; running it proves nothing more.
int main() { return 0; }
