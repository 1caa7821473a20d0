/* m2m-maf — an M2M Authentication Function (run.c). Usage: m2m-maf --config FILE */
#include "maf.h"

int main(int argc, char **argv)
{
    return maf_main(argc, argv, &maf_role_maf);
}
