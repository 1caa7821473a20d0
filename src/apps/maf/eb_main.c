/* m2m-eb — an Enrolee B of the Provisioned Symmetric Key Security Association (TS-0003
 * 8.2.2.1): it plays the MAF's role with Kpsa in place of Km (the CR's change 1), so it is
 * the MAF's program (run.c) in the Enrolee B role. Usage: m2m-eb --config FILE */
#include "maf.h"

int main(int argc, char **argv)
{
    return maf_main(argc, argv, &maf_role_enrolee_b);
}
