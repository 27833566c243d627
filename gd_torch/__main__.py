from gd_torch.cli import main

main()
